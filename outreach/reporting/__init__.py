"""Reporting: what each campaign sent, what came back, what it earned.

    roi.py  per-rule figures: sends, responses, attributed revenue, cost, ROI, lift
"""
