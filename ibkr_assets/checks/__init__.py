"""Asset checks: data quality (Great Expectations, :mod:`.data_quality`) and the compliance
gate; ``definitions.py`` loads every check defined in these modules."""
