"""Trading: strategy runtime, incremental indicators, risk engine, paper broker and reports."""
