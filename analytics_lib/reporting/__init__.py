"""Reporting: turning metric results into what people read and download (charts, HTML/PDF, exports)."""
