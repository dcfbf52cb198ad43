"""The history database: what the system ingested, ran, scored, judged, deployed and ranked."""
