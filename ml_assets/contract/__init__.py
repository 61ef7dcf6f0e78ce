"""The dataset contract (YAML) and its loader."""

from ml_assets.contract.model import (
    DEFAULT_CONTRACT,
    Column,
    Contract,
    ContractError,
    load_contract,
    window_to_timedelta,
)

__all__ = ["DEFAULT_CONTRACT", "Column", "Contract", "ContractError", "load_contract", "window_to_timedelta"]
