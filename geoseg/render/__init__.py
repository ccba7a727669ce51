"""Pictures for people: the class-map preview of a run and the figures of an evaluation."""
