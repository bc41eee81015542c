"""Background jobs: classifier training and batch inference, run by an embedded executor or by
Celery workers, with every job's state, progress and result in the database."""
