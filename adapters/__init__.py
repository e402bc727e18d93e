"""External systems, one package each, found through the lienthong.adapters entry points."""
