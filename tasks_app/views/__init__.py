"""The HTMX dashboard: function views over tasks_app.selectors (reads) and tasks_app.services (writes)."""
