"""Payment analytics workspace: the thin shared package every notebook imports.

Layers import only to their left: config -> warehouse -> synth -> metrics -> models ->
insights -> reporting -> runner -> scheduling; dashboards beside reporting; cli on top.
"""

__version__ = "0.1.0"
