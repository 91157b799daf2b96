"""The dashboard's views: pure functions from a snapshot of the home database to HTML (pages, tables,
the recovery timeline, SVG plots). They import nothing of the server but the snapshot model."""
