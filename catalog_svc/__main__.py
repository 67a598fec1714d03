"""`python -m catalog_svc`: run the catalog service until SIGTERM."""

from catalog_svc.server import create_server
from catalog_svc.settings import CatalogSettings
from ticketing_common.server import run

if __name__ == "__main__":
    run("catalog_svc", CatalogSettings, create_server)
