import os

from django.contrib.auth.models import Group, User
from oidc_provider.models import Client, ResponseType

admins = Group.objects.create(name="admins")
devs = Group.objects.create(name="devs")
alice = User.objects.create_user("alice", "alice@example.com", "alice-pw")
alice.groups.add(admins, devs)
carol = User.objects.create_user("carol", "carol@example.com", "carol-pw")
carol.groups.add(devs)
User.objects.create_user("bob", "bob@example.com", "bob-pw")
dave = User.objects.create_user("dave", "dave@example.com", "dave-pw")
dave.groups.add(devs)
client = Client.objects.create(
    name="quorumhub",
    client_id="quorumhub-test",
    client_secret="s3cret",
    client_type="confidential",
    jwt_alg="RS256",
    require_consent=False,
    reuse_consent=True,
    _redirect_uris=os.environ["OP_REDIRECT_URI"],
)
client.response_types.add(ResponseType.objects.get(value="code"))
