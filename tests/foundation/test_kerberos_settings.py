"""BOTIFY_KERBEROS_*: a half-set or wrong login is refused before anything reaches HDFS, and no setting at
all changes nothing. The login itself, against a real KDC, is tests/yarn/test_kerberos.py's."""
import os

import pytest

from common.kerberos import KEYTAB, PRINCIPAL, RELOGIN_S, KerberosError, ticket_from_env


def test_without_settings_nothing_changes():
    before = os.environ.get("KRB5CCNAME")
    with ticket_from_env({}) as keeper:
        assert keeper is None and os.environ.get("KRB5CCNAME") == before


@pytest.mark.parametrize("settings, message", [
    ({PRINCIPAL: "botify@EXAMPLE.COM"}, "set both"),
    ({KEYTAB: "/etc/botify/botify.keytab"}, "set both"),
    ({PRINCIPAL: "botify@EXAMPLE.COM", KEYTAB: "/nonexistent/botify.keytab"}, "no such file"),
    ({PRINCIPAL: "botify@EXAMPLE.COM", KEYTAB: __file__, RELOGIN_S: "hourly"}, "number of seconds"),
    ({PRINCIPAL: "botify@EXAMPLE.COM", KEYTAB: __file__, RELOGIN_S: "0"}, "must be positive"),
])
def test_a_wrong_setting_is_refused_with_its_name(settings, message):
    before = os.environ.get("KRB5CCNAME")
    with pytest.raises(KerberosError, match=message):
        with ticket_from_env(settings):
            pass
    assert os.environ.get("KRB5CCNAME") == before
