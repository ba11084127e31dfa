
import pytest

# Helper modules that test modules import by name and load as fixture plugins.
pytest.register_assert_rewrite("tests.days_log")
