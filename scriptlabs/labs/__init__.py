"""The catalogue: labs, their rules, filters, ordering and pages."""
