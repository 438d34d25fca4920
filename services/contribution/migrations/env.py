from services.common.migrate import run_env
from services.contribution.models import Base

run_env(Base.metadata)
