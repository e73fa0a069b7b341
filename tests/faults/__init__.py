"""The fault table's cases (docs/faults.md), one test module per section."""
