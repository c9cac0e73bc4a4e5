from django.apps import AppConfig


class CheckoutConfig(AppConfig):
    name = "checkout"
    verbose_name = "Checkout"

    def ready(self):
        # stations never imports checkout: the CSMS hands its updates to the handler we register.
        from stations.csms.base import (
            register_live_check,
            register_settlement_handler,
            register_start_result_handler,
            register_update_handler,
        )

        from . import services, terminal

        register_update_handler(services.session_apply_update)
        register_start_result_handler(services.session_apply_start_result)
        register_live_check(services.session_is_live)
        register_settlement_handler(terminal.settlement_answer)
