"""File I/O: scenario tables and files (CSV, XLSX, JSON), plan exports and charts."""
