"""Questions asked of many steps: what-if hardware changes, sensitivity, ingest and scaling."""
