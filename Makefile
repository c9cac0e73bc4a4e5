# Two commands: `make run` (set up and run the product on embedded defaults) and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.lock | cksum | cut -d' ' -f1)
ADMIN_PASSWORD ?= admin
# The extrawest-ocpi CPO the OCPI tests run against has its own venv (old fastapi, pydantic 1).
CPO_LOCK := tests/extrawest_cpo/requirements.lock
CPO_VENV := .venv-cpo
CPO_STAMP := $(CPO_VENV)/.installed-$(shell cat $(CPO_LOCK) | cksum | cut -d' ' -f1)

.PHONY: run test lint install install-cpo migrate messages makemessages lock clean gallery

$(STAMP): requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --requirement requirements.lock
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

$(CPO_STAMP): $(CPO_LOCK)
	test -x $(CPO_VENV)/bin/python || $(PYTHON) -m venv $(CPO_VENV)
	$(CPO_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CPO_VENV)/bin/python -m pip install --quiet --requirement $(CPO_LOCK)
	rm -f $(CPO_VENV)/.installed-* && touch $(CPO_STAMP)

install-cpo: $(CPO_STAMP)

# Compiled catalogues (.mo, not in git) from locale/*/LC_MESSAGES/*.po, with Babel: no GNU gettext.
messages: install
	$(PY) -m directpay.catalogues

# Refresh the .po files from the driver's sources (Babel; README "Languages"), then compile.
makemessages: install
	$(PY) -m directpay.catalogues extract

migrate: install messages
	mkdir -p var/broker/queue var/broker/processed var/broker/control
	$(PY) manage.py migrate --noinput

run: migrate
	$(PY) manage.py seed_demo --admin-password "$(ADMIN_PASSWORD)"
	@echo
	@echo "Admin:    http://127.0.0.1:8000/admin/  (user admin, password $(ADMIN_PASSWORD))"
	@echo "Checkout: open a URL above on your phone or in a browser; test card 4242 4242 4242 4242"
	@echo "Ctrl-C stops everything."
	@echo
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/honcho --procfile Procfile.dev start

# Tests run against PostgreSQL and Redis on 127.0.0.1 when they are up (in CI they must be).
test: install install-cpo messages
	@mkdir -p var
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest $(PYTEST_ARGS)

# The README's gallery: the browser tests save each driver page and state (en, de), the sticker
# sheet, a receipt and a credit note; they are made small and copied into docs/gallery/.
GALLERY_TESTS := tests/test_accessibility.py tests/test_gallery_documents.py \
	tests/test_stickers.py::test_a_sheet_as_a_person_sees_it
gallery: install messages
	rm -rf test-artifacts/gallery
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest $(GALLERY_TESTS) $(PYTEST_ARGS)
	$(PY) -m tests.gallery

# ruff with the configuration in pyproject.toml; CI runs it before the tests.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Re-pin every installed package after changing pyproject.toml's dependencies.
lock:
	rm -rf var/lockenv && $(PYTHON) -m venv var/lockenv
	var/lockenv/bin/pip install --quiet ".[test]"
	var/lockenv/bin/pip freeze --exclude qr-direct-pay > requirements.lock
	rm -rf *.egg-info build

clean:
	rm -rf $(VENV) $(CPO_VENV) var
