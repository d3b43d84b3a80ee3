# x
# z
