"""Low-rank compression: calibration, methods (one file + one decorator each), rank allocation,
save/load. The public verb is `eigenscope.compress`.
"""
