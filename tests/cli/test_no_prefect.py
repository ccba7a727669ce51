"""`geoseg run` never pays for Prefect; `geoseg deploy` says what to install when it is missing."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.cli import REPO


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
    )


def test_run_command_import_path_does_not_load_prefect() -> None:
    # everything `geoseg run` imports: the CLI module, the pipeline, and the run command's
    # own lazy imports (settings and pipeline), without running it
    proc = _python(
        "import sys, geoseg.cli, geoseg.config, geoseg.pipeline.run, geoseg.vectorize\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('prefect', 'prefect_dask', 'flows'))\n"
        "print(loaded)\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", proc.stdout


def test_deploy_without_prefect_names_the_extra_to_install() -> None:
    # a None entry in sys.modules makes `import prefect` fail as if it were not installed
    proc = _python(
        "import sys\n"
        "sys.modules['prefect'] = None\n"
        "sys.argv = ['geoseg', 'deploy']\n"
        "from geoseg.cli import main\n"
        "main()\n"
    )
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'geoseg[flows]'" in proc.stderr
    assert "Traceback" not in proc.stderr
