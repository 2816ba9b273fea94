"""`img2prompt serve`: a web page and an HTTP API over a `Describer` (see `app.create_app`)."""
