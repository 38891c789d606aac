# On PYTHONPATH first (bench/botify.py's "python parser" variant): redis-py finds no hiredis and parses replies in Python.
raise ImportError("hiredis hidden by bench/no_hiredis")
