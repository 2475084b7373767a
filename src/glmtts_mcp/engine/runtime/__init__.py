"""Running the models for callers: the pipeline, the job queue, output encoding."""
