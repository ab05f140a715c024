"""Built-in compression methods; importing this package registers them."""
from .svd import SVDConfig
from .asvd import ASVDConfig
from .fwsvd import FWSVDConfig
from .whiten import WhitenConfig

__all__ = ["SVDConfig", "ASVDConfig", "FWSVDConfig", "WhitenConfig"]
