"""`make bench`: each figure beside its anchor, measured in the same run (see ANCHORS.md)."""
