import matplotlib.pyplot as plt

x = [16, 17, 7, 12, 40, 14, 8, 32, 2]
y = [43, 13, 28, 48, 5, 44, 38, 6, 21]
fig, ax = plt.subplots(figsize=(6.4, 4.8))
ax.scatter(x, y, color="#55A868")
ax.set_title("Height against weight")
ax.set_xlabel("x")
ax.set_ylabel("y")
plt.tight_layout()
plt.show()
