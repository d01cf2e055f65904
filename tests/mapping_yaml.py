"""The issue's mapping (issue 5, verbatim) and an invertible one, shared by the mapping tests."""

FLOW_TABLES = """\
      - source: contacts
        target: customers
        filter: "status <> 'draft' AND country IN ('DE', 'FR')"   # conditional sync (SQL over source columns)
        columns:
          firstName: first_name                                  # rename
          birthDate: {name: birth_date, format: "%m/%d/%Y"}     # date/time → text in this format (and back)
          price_cents: {name: price, expr: "price_cents / 100.0"}   # computed (SQL expression, sqlglot)
          status: {map: {A: active, I: inactive}, default: unknown}  # mapped values
          ssn: {exclude: true}                                   # sensitive: never leaves the source
          email: {mask: sha256}                                  # sensitive: only a hash reaches the target
          internal_notes: {exclude: true}                        # field without correspondence
        defaults: {source_system: crm}                          # target column without correspondence
        validate:                                # checked on the row as it will be written (target names)
          - "first_name IS NOT NULL AND first_name <> ''"
          - "price >= 0"
"""

REVERSIBLE = """\
      - source: contacts
        target: customers
        columns:
          firstName: first_name
          birthDate: {name: birth_date, format: "%m/%d/%Y"}
          status: {map: {A: active, I: inactive}}
          price_cents: {name: price, currency: {minor_units: 2}}
          email: {name: email}
          ssn: {exclude: true}
          internal_notes: {exclude: true}
        defaults: {source_system: crm}
"""
