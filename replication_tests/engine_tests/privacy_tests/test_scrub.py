"""Production's values out of PostgreSQL's messages: the quoted value of a data error, wherever it stands."""

from replication.engine.privacy.scrub import HIDDEN, scrub_primary


def test_a_data_error_hides_its_value_at_the_end_or_before_out_of_range():
    assert scrub_primary('invalid input value for enum app.mood: "happy"', "22P02", False) == \
        f"invalid input value for enum app.mood: {HIDDEN}"
    assert scrub_primary('value "3000000000" is out of range for type integer', "22003", False) == \
        f"value {HIDDEN} is out of range for type integer"
    # Shown where the column may be shown, and never touched outside class 22.
    assert scrub_primary('value "7" is out of range for type smallint', "22003", True) == \
        'value "7" is out of range for type smallint'
    assert scrub_primary('relation "app.users" does not exist', "42P01", False) == 'relation "app.users" does not exist'
