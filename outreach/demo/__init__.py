"""``outreach demo``: the whole product on synthetic data.

    data.py       a synthetic tea shop as CSV files (Faker: the ``demo`` extra)
    run.py        import → launch → deliver → simulated responses → ROI report
"""
