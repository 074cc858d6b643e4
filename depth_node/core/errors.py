"""The package's one error type for bad input."""


class DepthNodeError(ValueError):
    """Bad input: a message, an array or a configuration value that breaks a stated rule.

    The message names the thing (field, parameter, argument), the rule and the value seen.
    """


class ConfigError(DepthNodeError):
    """A configuration value (node parameter, estimator option) is invalid."""

    def __init__(self, name: str, rule: str, value: object) -> None:
        self.name = name
        self.rule = rule
        self.value = value
        super().__init__(f"parameter '{name}': {rule} (got {value!r})")
