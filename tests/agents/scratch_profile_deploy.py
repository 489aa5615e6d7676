import cProfile
import pstats
import time

import pytest

from agents import services
from agents.client import console_public_key_b64
from tests.support.deploy import local_agent, make_device, make_policy

pytestmark = [pytest.mark.django_db]


def test_profile(settings, tmp_path):
    settings.RAMPART = {**settings.RAMPART, "CONSOLE_KEY_FILE": str(tmp_path / "k.pem")}
    key = console_public_key_b64()
    with local_agent(tmp_path / "a", key) as agent:
        _, group = make_policy("web", ports=(80,))
        device = make_device("web-1", group=group, agent=agent)
        from rules.models import Rule
        times = []
        prof = cProfile.Profile()
        for i in range(12):
            Rule.objects.filter(ruleset__name="web").update(dports=[str(1000 + i)])
            dep = services.deploy_create(devices=[device.pk], confirm_timeout=10)
            dd = dep.device_deployments.get()
            t0 = time.perf_counter()
            if i >= 2:
                prof.enable()
            services.device_deployment_run(device_deployment_id=dd.pk)
            if i >= 2:
                prof.disable()
            times.append((time.perf_counter() - t0) * 1000)
        print("times", [round(t) for t in times])
        pstats.Stats(prof).sort_stats("cumulative").print_stats(45)
