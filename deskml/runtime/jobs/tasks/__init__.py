"""The job kinds: one async function per kind, given a `JobContext`, returning the result JSON."""

from __future__ import annotations

from deskml.runtime.jobs.tasks.batch import run_batch
from deskml.runtime.jobs.tasks.image import train_image_classifier
from deskml.runtime.jobs.tasks.text import train_text_classifier

KINDS = {
    "train-text-classifier": train_text_classifier,
    "train-image-classifier": train_image_classifier,
    "batch": run_batch,
}
