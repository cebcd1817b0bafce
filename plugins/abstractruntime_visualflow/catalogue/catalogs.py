"""Catalog nodes (VAM §5): ``model_catalog``, ``provider_catalog`` and ``provider_models`` answer from
AbstractCore's provider registry (``abstractcore.providers.registry``); without AbstractCore installed they return
empty results of the same shape. Declared without any pin they are execution nodes; declared with data pins only,
lazily evaluated pure nodes.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from ..nodetypes import VisualNodeType


def _names(value: Any) -> List[str]:
    if not isinstance(value, (list, tuple)):
        return []
    return [str(v).strip() for v in value if v is not None and str(v).strip()]


def _pin_or_config(inputs: Dict[str, Any], pin: str, cfg: Dict[str, Any], *keys: str) -> List[str]:
    """A non-empty list pin wins; else the first list among the config keys."""
    given = _names(inputs.get(pin))
    if given:
        return given
    for key in keys:
        if isinstance(cfg.get(key), (list, tuple)):
            return _names(cfg[key])
    return []


def _available_providers() -> Optional[List[Tuple[str, List[str]]]]:
    """``[(provider name, [models])]`` of the providers AbstractCore reports ``available``; None without
    AbstractCore."""
    try:
        from abstractcore.providers.registry import get_all_providers_with_models
    except ImportError:
        return None
    out = []
    for item in get_all_providers_with_models(include_models=True) or []:
        if not isinstance(item, dict) or str(item.get("status") or "").lower() != "available":
            continue
        name = str(item.get("name") or "").strip()
        if name:
            out.append((name, _names(item.get("models"))))
    return out


def _allowed_provider(name: str, allow: List[str]) -> bool:
    return not allow or name.lower() in {a.lower() for a in allow}


def _allowed_model(provider: str, model: str, allow: List[str]) -> bool:
    return not allow or model in allow or f"{provider}/{model}" in allow


def _config(ctx: Any, key: str) -> Dict[str, Any]:
    cfg = ctx.data.get(key) if ctx is not None else None
    return cfg if isinstance(cfg, dict) else {}


def _index(value: Any) -> Optional[int]:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError):
        return None


def model_catalog(d: Dict[str, Any], ctx: Any = None) -> Dict[str, Any]:
    """Available providers and their models: ``{providers, models: [ids], pair, provider, model}``."""
    cfg = _config(ctx, "modelCatalogConfig")
    allow_providers = _pin_or_config(d, "allowed_providers", cfg, "allowedProviders", "allowed_providers")
    allow_models = _pin_or_config(d, "allowed_models", cfg, "allowedModels", "allowed_models")
    index = _index(d.get("index"))
    if index is None:
        index = _index(cfg.get("index")) or 0
    index = max(index, 0)
    available = _available_providers()
    if available is None:
        return {"providers": [], "models": [], "pair": None, "provider": "", "model": ""}
    providers = [(name, models) for name, models in available if _allowed_provider(name, allow_providers)]
    pairs = [{"provider": name, "model": m, "id": f"{name}/{m}"}
             for name, models in providers for m in models if _allowed_model(name, m, allow_models)]
    pair = pairs[index] if index < len(pairs) else (pairs[0] if pairs else None)
    return {"providers": [name for name, _ in providers], "models": [p["id"] for p in pairs], "pair": pair,
            "provider": pair["provider"] if pair else "", "model": pair["model"] if pair else ""}


def provider_catalog(d: Dict[str, Any], ctx: Any = None) -> Dict[str, Any]:
    """Available providers: ``{providers: [names]}``."""
    allow = _names(d.get("allowed_providers"))
    available = _available_providers()
    return {"providers": [name for name, _ in available or [] if _allowed_provider(name, allow)]}


def provider_models(d: Dict[str, Any], ctx: Any = None) -> Dict[str, Any]:
    """The models of one provider: ``{provider, models: [bare names]}``."""
    cfg = _config(ctx, "providerModelsConfig")
    provider = d.get("provider") if isinstance(d.get("provider"), str) else cfg.get("provider")
    provider = provider.strip() if isinstance(provider, str) else ""
    if not provider:
        return {"provider": "", "models": []}
    allow = _pin_or_config(d, "allowed_models", cfg, "allowedModels", "allowed_models")
    try:
        from abstractcore.providers.registry import get_available_models_for_provider
    except ImportError:
        return {"provider": provider, "models": []}
    models = _names(get_available_models_for_provider(provider))
    return {"provider": provider, "models": [m for m in models if _allowed_model(provider, m, allow)]}


def catalog_node_types() -> List[VisualNodeType]:
    T = VisualNodeType
    return [
        T("model_catalog", handler=model_catalog, context=True, inputs=["allowed_providers", "allowed_models", "index"],
          outputs=["providers", "models", "pair", "provider", "model"],
          description="Available AbstractCore providers and models, and one selected pair"),
        T("provider_catalog", handler=provider_catalog, context=True, inputs=["allowed_providers"],
          outputs=["providers"], description="Available AbstractCore providers"),
        T("provider_models", handler=provider_models, context=True, inputs=["provider", "allowed_models"],
          outputs=["provider", "models"], description="The models of one AbstractCore provider"),
    ]


__all__ = ["catalog_node_types", "model_catalog", "provider_catalog", "provider_models"]
