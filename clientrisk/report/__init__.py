"""What the pipeline reports: diagnostics of the live model and the data, and the PDF."""
