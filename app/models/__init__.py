"""SQLAlchemy models. Import every model here so Flask-Migrate's autogenerate sees it."""

from app.models.file import File
from app.models.security import RecoveryCode, SecurityEvent
from app.models.user import User

__all__ = ["File", "RecoveryCode", "SecurityEvent", "User"]
