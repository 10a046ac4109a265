"""The platform configuration file (`codexk8s.yaml`): watched repositories, who may trigger, stage overrides."""

from .loader import ConfigError, load_config, load_config_from_environment
from .models import PlatformConfig, RepositoryConfig

__all__ = ["ConfigError", "PlatformConfig", "RepositoryConfig", "load_config", "load_config_from_environment"]
