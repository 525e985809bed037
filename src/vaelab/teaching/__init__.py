"""The lab as a tutorial: student and solution builds, notebooks (``tutorial``), and the
grader of students' notebooks (``grading``)."""
