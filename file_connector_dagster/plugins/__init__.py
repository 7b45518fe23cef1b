"""Plugins act on sync results (notifications and the like): the contract, the manager, built-ins."""

from .base import BasePlugin, PluginMetadata, SyncEvent
from .manager import PluginManager, PluginOutcome, plugin_types, register_plugin

__all__ = ["BasePlugin", "PluginMetadata", "SyncEvent", "PluginManager", "PluginOutcome", "plugin_types",
           "register_plugin"]
