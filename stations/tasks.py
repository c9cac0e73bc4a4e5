from celery import shared_task

from stations.csms import simulator


@shared_task(ignore_result=True)
def simulator_tick():
    simulator.tick()
