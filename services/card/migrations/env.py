from services.common.migrate import run_env
from services.card.models import Base

run_env(Base.metadata)
