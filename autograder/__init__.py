"""LeakLab's grading pipeline: `python -m autograder {release,grade,demo}`."""
from .pipeline import GradeResult, demo, format_table, grade, release

__all__ = ["GradeResult", "demo", "format_table", "grade", "release"]
