"""runpoller_dev"""
