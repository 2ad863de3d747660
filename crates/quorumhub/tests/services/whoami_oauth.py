"""A service protected by JupyterHub's own HubOAuth (jupyterhub.services.auth),
as JupyterHub's examples/service-whoami-oauth has it: it answers the signed-in
user's name and the scopes of its OAuth token, as JSON. Run by the hub as a
managed service, which gives it JUPYTERHUB_SERVICE_PREFIX, JUPYTERHUB_SERVICE_URL,
JUPYTERHUB_API_TOKEN and the OAuth client variables."""

import json
import os
from urllib.parse import urlparse

from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from tornado.web import Application, RequestHandler, authenticated

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from jupyterhub.utils import url_path_join


class WhoAmIHandler(HubOAuthenticated, RequestHandler):
    @authenticated
    def get(self):
        user = self.get_current_user()
        self.set_header("content-type", "application/json")
        self.write(
            json.dumps({"whoami": user["name"], "scopes": sorted(user.get("scopes", []))})
        )


def main():
    prefix = os.environ["JUPYTERHUB_SERVICE_PREFIX"]
    app = Application(
        [
            (prefix, WhoAmIHandler),
            (url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler),
        ],
        cookie_secret=os.urandom(32),
    )
    url = urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])
    HTTPServer(app).listen(url.port, url.hostname)
    IOLoop.current().start()


if __name__ == "__main__":
    main()
