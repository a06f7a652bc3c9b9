"""The data stage: annotated dataset -> TFRecords + label map + report."""
