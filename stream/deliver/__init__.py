"""Stage 2, the deliver stage: enriched events to the Graph API or a CAPI Gateway (see stage.py)."""
