"""Who features describe. Join keys come from the window spec so the core and Feast agree."""

from feast import Entity, ValueType

from stream_app.core.window_spec import Entity as Key

user = Entity(name="user", join_keys=[Key.USER.value], value_type=ValueType.INT64,
              description="A cardholder; transactions are keyed and partitioned by user_id.")
merchant = Entity(name="merchant", join_keys=[Key.MERCHANT.value], value_type=ValueType.INT64,
                  description="Where a card was used.")
