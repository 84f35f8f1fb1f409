"""The Ledger's risk settings, taken from the parsed configuration once."""

from __future__ import annotations

from coordinator.runtime import Services
from coordinator.trading.sizing import SizingTable
from coordinator.trading.sizing_roottrading import SizingMode
from coordinator.trading.validation import RiskConfig

__all__ = ["risk_config"]


def risk_config(services: Services) -> RiskConfig:
    config = services.config
    risk = config.risk
    return RiskConfig(
        quote_asset=risk.quote_asset,
        max_concurrent_trades=config.trading.max_concurrent_trades,
        min_notional=risk.min_notional,
        max_exposure_percent=risk.max_exposure_percent,
        max_orders_per_minute=risk.max_orders_per_minute,
        daily_loss_limit_percent=risk.daily_loss_limit_percent,
        max_drawdown_percent=risk.max_drawdown_percent,
        stop_loss_cooldown=risk.stop_loss_cooldown,
        require_market_data=risk.require_market_data,
        max_price_deviation_percent=risk.max_price_deviation_percent,
        market_data_max_age=risk.market_data_max_age,
        portfolio_max_age=risk.portfolio_max_age,
        portfolio_max_age_exit=risk.portfolio_max_age_exit,
        sizing=SizingTable(risk.sizing_thresholds, risk.sizing_percents),  # type: ignore[arg-type]
        sizing_mode=SizingMode(risk.sizing_mode),
        fee_rate=config.paper.fee_percent / 100.0,
        quantity_decimals=risk.quantity_decimals,
        quantity_decimals_by_symbol=dict(risk.quantity_decimals_by_symbol),
    )
