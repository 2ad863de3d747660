from django.utils.translation import gettext_lazy as _
from oidc_provider.lib.claims import ScopeClaims


def _groups(user):
    return sorted(g.name for g in user.groups.all())


def userinfo(claims, user):
    claims.update(
        preferred_username=user.username,
        name=user.get_full_name() or user.username,
        email=user.email,
        email_verified=True,
    )
    return claims


class GroupsScopeClaims(ScopeClaims):
    info_groups = (_("Groups"), _("Your group memberships."))

    def scope_groups(self):
        return {"groups": _groups(self.user)}


def idtoken_hook(id_token, user, token, request, **kwargs):
    id_token["groups"] = _groups(user)
    return id_token


def sub_username(user):
    return user.username
