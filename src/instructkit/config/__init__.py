"""Recipe configs: the arguments (`arguments`), reading YAML + command line with every problem reported at once
(`parsing`), machine defaults (`machine`) and the resolved, read-only form a run uses (`resolved`)."""
