"""The application core's use cases by group, mixed into backend.app.App (one object, thin faces)."""
