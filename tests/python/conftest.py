import os

# scikit-learn's check_array_api_input (numpy namespace) only runs when scipy's array-API mode
# is on; it must be set before scipy is first imported.
os.environ.setdefault("SCIPY_ARRAY_API", "1")
